#!/usr/bin/env python
"""Rebuild the embedded demo stimulus set ``probelib/data/demo_stimuli/``.

The demo set is a curated list of real, freely licensed photographs taken from
packages that install offline (Debian data packages, PyPI packages and one PyPI
source distribution).  Every image is cropped to a square (a fixed crop box, or
the centre square when none is given), resized to 160 x 160 pixels with a
Lanczos filter and written as a JPEG of quality 90.  ``SOURCES.csv`` records
for every file its category, package, original path, licence and notes.

The manifest below is the single place where the set is defined.  The build is
deterministic: the same package versions give byte-identical files.

What it needs
-------------
PyPI (installed in the running environment):
    scikit-image, scikit-learn, matplotlib, Pillow (with WebP support)
PyPI source distribution (downloaded, not installed; it needs dlib to install):
    face_recognition==1.3.0  ->  ``pip download --no-deps --no-binary :all:
    --no-build-isolation face_recognition==1.3.0 -d SDIST_DIR``
Debian bookworm packages (installed with apt-get, or fetched and unpacked
without installing by ``--fetch``; versions pinned in ``DEBIAN_PACKAGES``):
    gcompris-qt-data gimp-help-en gramps kphotoalbum lomiri-wallpapers-16.04
    opencv-doc plasma-workspace-data visp-images-data

Usage
-----
    python scripts/build_demo_stimuli.py --fetch            # fetch what is missing, build
    python scripts/build_demo_stimuli.py --staging DIR       # use packages unpacked in DIR
    python scripts/build_demo_stimuli.py --preview sheet.png # also write a contact sheet

Excluded on purpose (not free, or provenance unclear), for the record:
    'lena' (not free; Debian already strips it from opencv-doc), OpenCV's
    messi5.jpg (press photograph), baboon.jpg (USC-SIPI, terms unclear),
    aloe*/rubberwhale*/basketball* (Middlebury benchmark data), graf*/leuven*
    (Oxford affine-covariant benchmark), scikit-image's lfw_subset.npy (Labeled
    Faces in the Wild, news photographs), the Gramps example photos O0-O5.jpg
    (watermarked third-party photos), GNOME's user faces (no per-file licence),
    darknet's sample images (provenance undocumented) and the cartoon
    drawings of GCompris' word lists (not photographs).
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import importlib.util
import io
import re
import struct
import subprocess
import sys
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, features

REPO = Path(__file__).resolve().parents[1]
OUT_DIR = REPO / "probelib" / "data" / "demo_stimuli"
SIDE = 160  # output side, pixels
JPEG_QUALITY = 90
BACKGROUND = (128, 128, 128)  # transparent pixels are composited over mid-grey

# Debian bookworm package -> version the set was built from.
DEBIAN_PACKAGES: dict[str, str] = {
    "gcompris-qt-data": "3.1-2",
    "gimp-help-en": "2.10.34-2",
    "gramps": "5.1.5-1",
    "kphotoalbum": "5.9.1-1",
    "lomiri-wallpapers-16.04": "20.04.0-2",
    "opencv-doc": "4.6.0+dfsg-12",
    "plasma-workspace-data": "4:5.27.5-2+deb12u2",
    "visp-images-data": "3.5.0-1",
}
# PyPI source distributions: project -> (version, file name).
SDISTS: dict[str, tuple[str, str]] = {
    "face_recognition": ("1.3.0", "face_recognition-1.3.0.tar.gz"),
}
# Installed PyPI distributions: distribution name -> import name.
PYPI_MODULES: dict[str, str] = {
    "scikit-image": "skimage",
    "scikit-learn": "sklearn",
    "matplotlib": "matplotlib",
}

Crop = tuple[float, float, float]  # (centre x / width, centre y / height, side / min(width, height))


@dataclass(frozen=True)
class Item:
    """One stimulus of the manifest.

    source: "deb" (``path`` is the installed absolute path), "rcc" (``path`` is
    ``<installed .rcc file>::<resource path>``), "pypi" (``path`` is relative to
    the installed module) or "sdist" (``path`` is the member of the tarball).
    ``licence`` is required except for Debian packages with a machine-readable
    copyright file, where it is looked up with ``key`` (the file's path in the
    Debian source tree).  ``crop`` selects a square; None means the centre square.
    ``rotate`` turns the image clockwise first (KPhotoAlbum keeps orientation in
    its index.xml, not in EXIF).
    """

    name: str
    category: str
    source: str
    package: str
    path: str
    crop: Crop | None = None
    licence: str | None = None
    key: str | None = None
    notes: str = ""
    rotate: int = 0  # clockwise quarter turns in degrees, applied after EXIF orientation


# ----------------------------------------------------------------------------- manifest
SK = "scikit-image"
GC_RCC = "/usr/share/gcompris-qt/rcc/"
OCV = "/usr/share/doc/opencv-doc/examples/"
KPA = "/usr/share/kphotoalbum/demo/"
GRAMPS = "/usr/share/doc/gramps/example/gramps/"
LOMIRI = "/usr/share/backgrounds/"
PLASMA = "/usr/share/plasma/avatars/photos/"
SOLVAY = "/usr/share/visp-images-data/ViSP-images/Solvay/Solvay_conference_1927_Version2_2126x1463.jpg"
OBAMA = "face_recognition-1.3.0/tests/test_images/"
US_GOV = "public-domain (work of the US federal government)"
KPA_NOTE = "KPhotoAlbum demo album (Debian copyright: GPL-2+ for the whole package)"
OLD_PHOTO = "historical photograph, public domain by age; shipped in the Gramps example family tree"


def gc(name: str, category: str, rcc: str, member: str, crop: Crop | None = None, notes: str = "") -> Item:
    """A photograph inside a GCompris activity resource file."""
    return Item(name, category, "rcc", "gcompris-qt-data",
                f"{GC_RCC}{rcc}.rcc::gcompris/src/activities/{member}", crop,
                notes=notes or f"GCompris '{member.split('/')[0]}' activity photograph")


def ocv(name: str, category: str, rel: str, crop: Crop | None = None, notes: str = "") -> Item:
    """An OpenCV sample image (``rel`` relative to the examples directory)."""
    key = ("contrib/modules/text/samples/" + rel.split("/", 1)[1]) if rel.startswith("text/") else "samples/" + rel
    return Item(name, category, "deb", "opencv-doc", OCV + rel, crop, key=key,
                notes=notes or "OpenCV sample image")


def kpa(name: str, category: str, file: str, crop: Crop | None = None, rotate: int = 0) -> Item:
    """A photograph of KPhotoAlbum's demo album (``rotate`` = the angle its index.xml records)."""
    return Item(name, category, "deb", "kphotoalbum", KPA + file, crop, licence="GPL-2+", notes=KPA_NOTE,
                rotate=rotate)


def plasma(name: str, category: str, file: str, crop: Crop | None = None) -> Item:
    return Item(name, category, "deb", "plasma-workspace-data", PLASMA + file, crop,
                key="kcms/users/avatars/photos/" + file, notes="KDE user-avatar photograph (Pixabay/Pexels)")


def lomiri(name: str, category: str, file: str, crop: Crop | None = None) -> Item:
    author = file.rsplit("_by_", 1)[1].rsplit(".", 1)[0].replace("_", " ")
    return Item(name, category, "deb", "lomiri-wallpapers-16.04", LOMIRI + file, crop, key="16.04/" + file,
                notes=f"Lomiri (Ubuntu Touch) wallpaper by {author}")


def solvay(i: int, crop: Crop) -> Item:
    return Item(f"solvay_1927_crop{i}", "face", "deb", "visp-images-data", SOLVAY, crop,
                licence="public-domain", key="Solvay/" + SOLVAY.rsplit("/", 1)[1],
                notes=f"CROP {i} of 8 (one face each) of the same group photograph: 5th Solvay conference, "
                      "1927, by Benjamin Couprie, public domain")


MANIFEST: list[Item] = [
    # ---------------------------------------------------------------- faces
    Item("astronaut_collins", "face", "pypi", SK, "data/astronaut.png", (0.43, 0.24, 0.5),
         licence="public-domain", notes="NASA portrait of Eileen Collins"),
    Item("grace_hopper", "face", "pypi", "matplotlib", "mpl-data/sample_data/grace_hopper.jpg", (0.5, 0.33, 0.72),
         licence="public-domain", notes="US Navy portrait of Grace Hopper"),
    Item("obama_portrait", "face", "sdist", "face_recognition", OBAMA + "obama.jpg", (0.49, 0.3, 0.6),
         licence=US_GOV, notes="official White House portrait (Pete Souza); package licence MIT"),
    Item("obama_speech", "face", "sdist", "face_recognition", OBAMA + "obama2.jpg", (0.59, 0.24, 0.6),
         licence=US_GOV, notes="White House photograph; package licence MIT"),
    Item("biden_portrait", "face", "sdist", "face_recognition", OBAMA + "biden.jpg", (0.5, 0.16, 0.62),
         licence=US_GOV, notes="official portrait of Joe Biden; package licence MIT"),
    Item("aksel_andersson", "face", "deb", "gramps", GRAMPS + "654px-Aksel_Andersson.jpg", (0.5, 0.38, 0.75),
         key="example/gramps/654px-Aksel_Andersson.jpg", notes=OLD_PHOTO),
    Item("alimehemet", "face", "deb", "gramps", GRAMPS + "Alimehemet.jpg", (0.5, 0.38, 0.7),
         key="example/gramps/Alimehemet.jpg", notes=OLD_PHOTO),
    Item("dahlgren", "face", "deb", "gramps", GRAMPS + "E_W_Dahlgren.jpg", (0.5, 0.35, 0.7),
         key="example/gramps/E_W_Dahlgren.jpg", notes=OLD_PHOTO),
    Item("yawn", "face", "deb", "gramps", GRAMPS + "Gunnlaugur_Larusson_-_Yawn.jpg", (0.5, 0.45, 0.9),
         key="example/gramps/Gunnlaugur_Larusson_-_Yawn.jpg", notes="Gramps example family tree"),
    kpa("kpa_jesper", "face", "jesper.jpg"),
    kpa("kpa_jesper_2", "face", "jesper_2.jpg", (0.5, 0.45, 0.85)),
    kpa("kpa_new_wave_2", "face", "new_wave_2.jpg", (0.5, 0.45, 0.85)),
    kpa("kpa_bar55", "face", "bar55.jpg", (0.45, 0.55, 0.8)),
    kpa("kpa_bar55_2", "face", "bar55_2.jpg", (0.5, 0.45, 0.85)),
    kpa("kpa_qt_logo", "face", "qt-logo.jpg"),
    kpa("kpa_anne_helene", "face", "anne_helene.jpg", (0.45, 0.3, 0.55)),
    solvay(1, (0.129, 0.557, 0.091)),
    solvay(2, (0.229, 0.564, 0.100)),
    solvay(3, (0.331, 0.555, 0.086)),
    solvay(4, (0.440, 0.561, 0.097)),
    solvay(5, (0.558, 0.548, 0.097)),
    solvay(6, (0.655, 0.547, 0.100)),
    solvay(7, (0.726, 0.546, 0.097)),
    solvay(8, (0.833, 0.551, 0.094)),
    # ---------------------------------------------------------------- bodies (people, limbs)
    Item("cameraman", "body", "pypi", SK, "data/camera.png", licence="CC0-1.0",
         notes="photograph by Lav Varshney"),
    Item("obama_standing", "body", "sdist", "face_recognition", OBAMA + "obama3.jpg", (0.5, 0.55, 1.0),
         licence=US_GOV, notes="White House photograph, torso crop; package licence MIT"),
    Item("claudet_seated", "body", "deb", "gramps", GRAMPS + "AntoineClaudet.png",
         key="example/gramps/AntoineClaudet.png", notes=OLD_PHOTO),
    Item("expedition_1897", "body", "deb", "gramps", GRAMPS + "1897_expeditionsmannschaft_rio_a.jpg",
         (0.5, 0.5, 1.0), key="example/gramps/1897_expeditionsmannschaft_rio_a.jpg", notes=OLD_PHOTO),
    Item("guardsmen", "body", "deb", "gimp-help-en",
         "/usr/share/gimp/2.0/help/en/images/tutorials/quickie-flip-example-source.jpg",
         licence="GFDL-1.2+ (no invariant sections)", notes="GIMP manual example image"),
    kpa("kpa_cold_water", "body", "cold_water.jpg", (0.55, 0.55, 1.0)),
    kpa("kpa_pool", "body", "pool.jpg"),
    kpa("kpa_pool_2", "body", "pool_2.jpg"),
    kpa("kpa_new_wave_1", "body", "new_wave_1.jpg", rotate=90),
    kpa("kpa_wayne", "body", "wayne.jpg", rotate=90),
    kpa("kpa_grand_canyon_1", "body", "grand_canyon_1.jpg", rotate=180),
    kpa("kpa_grand_canyon_2", "body", "grand_canyon_2.jpg", (0.3, 0.5, 1.0)),
    plasma("astronaut_moon", "body", "Astronaut.png"),
    gc("didgeridoo_player", "body", "explore_world_music", "explore_world_music/resource/music/australia.webp"),
    gc("folk_musicians", "body", "explore_world_music", "explore_world_music/resource/music/ireland.webp"),
    gc("singers", "body", "explore_world_music", "explore_world_music/resource/music/italy.webp"),
    gc("mariachi", "body", "explore_world_music", "explore_world_music/resource/music/mexico.webp"),
    gc("orchestra", "body", "explore_world_music", "explore_world_music/resource/music/orchestra.webp"),
    gc("man_at_fireplace", "body", "louis-braille", "louis-braille/resource/fireplace.webp"),
    gc("hand_reading_braille", "body", "louis-braille", "louis-braille/resource/braille.webp"),
    gc("hands_on_book", "body", "louis-braille", "louis-braille/resource/teach.webp"),
    gc("hand_back_right", "body", "leftright", "leftright/resource/main_droite_dessus_0.webp"),
    gc("hand_palm_left", "body", "leftright", "leftright/resource/main_gauche_paume_0.webp"),
    gc("fist_back_right", "body", "leftright", "leftright/resource/poing_droit_dessus_0.webp"),
    gc("fist_palm_left", "body", "leftright", "leftright/resource/poing_gauche_paume_0.webp"),
    # ---------------------------------------------------------------- places (scenes, buildings, landscapes)
    Item("summer_palace", "place", "pypi", "scikit-learn", "datasets/images/china.jpg",
         licence="CC-BY-2.0", notes="'Summer Palace' by danielbuechele (Flickr)"),
    ocv("building", "place", "data/building.jpg"),
    ocv("home", "place", "data/home.jpg"),
    lomiri("bridge", "place", "Bridge_by_Sander_Klootwijk.jpg"),
    lomiri("aitzgorri", "place", "aitzgorri_by_Aitzol_Berasategi.jpg"),
    lomiri("mountain_stream", "place", "life_by_Aitzol_Berasategi.jpg"),
    lomiri("picos_de_europa", "place", "picosdeeuropa_by_Aitzol_Berasategi.jpg"),
    lomiri("sunset_hills", "place", "sunset_by_Aitzol_Berasategi.jpg"),
    kpa("kpa_grand_canyon_3", "place", "grand_canyon_3.jpg"),
    kpa("kpa_skagen", "place", "skagen.jpg"),
    kpa("kpa_skagen_2", "place", "skagen_2.jpg"),
    kpa("kpa_snowy_airport", "place", "snow.jpg"),
    *[gc(stem, "place", "explore_monuments", f"explore_monuments/resource/{sub}/{stem}.webp") for sub, stem in [
        ("egypt", "greatPyramidOfGiza"), ("france", "arlesAmphitheater"), ("france", "chateaudeChambord"),
        ("france", "citedeCarcassonne"), ("france", "montStMichel"), ("france", "palaisdesPapes"),
        ("france", "pontduGard"), ("france", "reimsCathedral"), ("france", "rocamadour"),
        ("germany", "aulaPalatina"), ("germany", "berlinCathedral"), ("germany", "neuschwansteinCastle"),
        ("india", "charminar"), ("india", "goldenTemple"), ("india", "hawaMahal"),
        ("usa", "castillodeSanMarcos"), ("usa", "lincolnMemorial"), ("wonders", "machuPicchu"),
    ]],
    *[gc(stem, "place", "categorization", f"categorization/resource/images/monuments/{stem}.webp") for stem in [
        "colosseum", "empireState", "parthenon", "usCapitol", "cathedral",
    ]],
    *[gc(stem.split("_")[0], "place", "details", f"details/resource/image/{stem}.webp") for stem in [
        "EilanDonanCastle_background", "EgeskovSlotSpejling_background", "TowerBridgeLondon_background",
        "OperaSidney_background", "Nagoya_background",
    ]],
    # ---------------------------------------------------------------- written words (text, signs, pages)
    Item("scanned_page", "word", "pypi", SK, "data/page.png", licence="BSD-3-Clause",
         notes="scikit-image sample data (scanned printed page)"),
    Item("handwriting", "word", "pypi", SK, "data/text.png", licence="public-domain",
         notes="scikit-image sample data, from Wikipedia File:Corner.png"),
    ocv("sudoku", "word", "data/sudoku.png"),
    ocv("text_defocus", "word", "data/text_defocus.jpg"),
    ocv("text_motion", "word", "data/text_motion.jpg"),
    ocv("package_label", "word", "data/box.png"),
    ocv("book_covers", "word", "data/left.jpg"),
    ocv("license_plate", "word", "data/licenseplate_motion.jpg"),
    *[ocv(f"scene_text_{i}", "word", f"text/scenetext0{i}.jpg",
          notes="OpenCV text-module sample (street-sign photograph)") for i in range(1, 7)],
    *[ocv(f"shop_sign_{i}", "word", f"text/scenetext_segmented_word0{i}.jpg",
          notes="OpenCV text-module sample (photograph of a sign, distinct from scenetext0*)") for i in range(1, 6)],
    Item("birth_record", "word", "deb", "gramps", GRAMPS + "scanned_microfilm.png",
         key="example/gramps/scanned_microfilm.png", notes="scanned 1855 handwritten birth record"),
    gc("letter_blocks", "word", "categorization", "categorization/resource/images/alphabets/alphabets.webp"),
    gc("digit_blocks", "word", "categorization", "categorization/resource/images/numbers/numbers.webp"),
    # ---------------------------------------------------------------- other objects (animals, food, tools ...)
    Item("coffee", "object", "pypi", SK, "data/coffee.png", licence="CC0-1.0", notes="photograph by Rachel Michetti"),
    Item("chelsea_cat", "object", "pypi", SK, "data/chelsea.png", licence="CC0-1.0",
         notes="photograph by Stefan van der Walt"),
    Item("rocket", "object", "pypi", SK, "data/rocket.jpg", licence="public-domain", notes="SpaceX launch photograph"),
    Item("flower", "object", "pypi", "scikit-learn", "datasets/images/flower.jpg", licence="CC-BY-2.0",
         notes="photograph by vultilion (Flickr)"),
    *[ocv(stem, "object", f"data/{stem}.jpg") for stem in ["apple", "fruits", "orange", "squirrel_cls",
                                                           "butterfly", "stuff", "board"]],
    ocv("smarties", "object", "data/smarties.png"),
    ocv("chicky_dog", "object", "data/chicky_512.png"),
    *[plasma(stem.lower().replace(" ", "_"), "object", f"{stem}.png") for stem in [
        "Air Balloon", "Books", "Brushes", "Bulb", "Car", "Cat", "Chameleon", "Cocktail", "Dog", "Fish",
        "Gamepad", "Owl", "Pancakes", "Parrot", "Pencils", "Shuttle", "Soccer", "Sunflower", "Sushi",
    ]],
    *[gc(stem, "object", "erase", f"erase/resource/{stem}.webp") for stem in [
        "alpaca", "cheetah", "crab", "giraffe", "gorilla", "kingfisher", "penguin", "red_panda", "rhinoceros",
        "toucan",
    ]],
    *[gc(stem, "object", "categorization", f"categorization/resource/images/{sub}/{stem}.webp") for sub, stem in [
        ("tools", "hammer3"), ("tools", "multimeter2"), ("tools", "plier1"), ("tools", "screwDriver"),
        ("tools", "wrench1"), ("tools", "scissors2"), ("others", "chair"), ("others", "volleyball"),
        ("others", "spoons"), ("others", "bucket"),
    ]],
    kpa("kpa_dog", "object", "donna_2.jpg"),
    kpa("kpa_rabbit", "object", "spiff.jpg"),
    lomiri("fig", "object", "Picture_0B_by_freespace.jpg"),
    lomiri("wine_table", "object", "Wine_by_Jakkub_Mede.jpg"),
    lomiri("dogs", "object", "friends_by_Aitzol_Berasategi.jpg"),
    lomiri("dragonfly", "object", "Dragonfly_by_Bolly.jpg"),
]

CATEGORY_ORDER = ["face", "body", "place", "word", "object"]


# ----------------------------------------------------------------------------- source access
class MissingSource(RuntimeError):
    """A package or file the manifest needs is not available."""


def read_rcc(path: Path) -> dict[str, bytes]:
    """All files of a Qt binary resource file (.rcc), as {resource path: bytes}."""
    b = path.read_bytes()
    if b[:4] != b"qres":
        raise ValueError(f"{path} is not a Qt resource file")
    version, tree_off, data_off, names_off = struct.unpack(">IIII", b[4:20])
    entry = 14 if version == 1 else 22

    def name(off: int) -> str:
        n = struct.unpack(">H", b[names_off + off:names_off + off + 2])[0]
        return b[names_off + off + 6:names_off + off + 6 + 2 * n].decode("utf-16-be")

    out: dict[str, bytes] = {}

    def walk(i: int, prefix: str) -> None:
        o = tree_off + i * entry
        name_off, flags = struct.unpack(">IH", b[o:o + 6])
        nm = name(name_off) if i else ""
        if flags & 2:  # directory
            count, first = struct.unpack(">II", b[o + 6:o + 14])
            for child in range(first, first + count):
                walk(child, f"{prefix}{nm}/" if i else "")
            return
        data = struct.unpack(">I", b[o + 10:o + 14])[0] + data_off
        size = struct.unpack(">I", b[data:data + 4])[0]
        raw = b[data + 4:data + 4 + size]
        if flags & 1:  # zlib, with a 4-byte length prefix
            raw = zlib.decompress(raw[4:])
        elif flags & 4:
            raise ValueError(f"{path}: zstd-compressed resources are not supported")
        out[prefix + nm] = raw

    walk(0, "")
    return out


def parse_dep5(path: Path) -> list[tuple[list[str], str, str]] | None:
    """Stanzas (patterns, licence short name, comment) of a DEP-5 copyright file, or None."""
    text = path.read_text(encoding="utf-8", errors="replace")
    if not text.startswith("Format:"):
        return None
    stanzas = []
    for para in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        current = None
        for line in para.splitlines():
            if line[:1] in (" ", "\t") and current:
                fields[current] += "\n" + line.strip()
            elif ":" in line:
                current, value = line.split(":", 1)
                fields[current.strip()] = value.strip()
        if "Files" in fields and "License" in fields:
            stanzas.append((fields["Files"].split(), fields["License"].splitlines()[0].strip(),
                            fields.get("Comment", "").replace("\n", " ")))
    return stanzas


def dep5_licence(stanzas: list[tuple[list[str], str, str]], keys: list[str]) -> tuple[str, str]:
    """Licence of the first-best of several candidate source paths.

    Within one path the last matching stanza wins (DEP-5); across candidate
    paths (the same file under other extensions) the most literal pattern wins.
    """
    best: tuple[int, str, str] | None = None
    for key in keys:
        hit = None
        for patterns, lic, comment in stanzas:
            for pat in patterns:
                if fnmatch.fnmatchcase(key, pat):
                    hit = (len(pat) - pat.count("*"), lic, comment)
                    break
        if hit and (best is None or hit[0] > best[0]):
            best = hit
    if best is None:
        raise MissingSource(f"no copyright stanza matches {keys}")
    return best[1], best[2]


class Sources:
    """Locates manifest files in installed packages or in an unpacked staging tree."""

    def __init__(self, staging: Path, sdist_dir: Path, fetch: bool) -> None:
        self.staging, self.sdist_dir, self.fetch = staging, sdist_dir, fetch
        self._rcc: dict[Path, dict[str, bytes]] = {}
        self._dep5: dict[str, list | None] = {}

    # ---- Debian packages
    def deb_root(self, pkg: str) -> Path:
        """Root under which ``pkg``'s files live: ``/`` if installed, else the staging tree."""
        want = DEBIAN_PACKAGES[pkg]
        installed = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", pkg],
                                   capture_output=True, text=True)
        if installed.returncode == 0 and installed.stdout.startswith("install ok installed"):
            version = installed.stdout.split()[-1]
            if version != want:
                print(f"warning: {pkg} {version} installed, the set was built from {want}", file=sys.stderr)
            return Path("/")
        root = self.staging / pkg
        if not (root / "usr").is_dir():
            if not self.fetch:
                raise MissingSource(
                    f"Debian package {pkg} is neither installed nor unpacked in {root}.\n"
                    f"  Install it (apt-get install {pkg}={want}) or rerun with --fetch.")
            self._fetch_deb(pkg, want, root)
        return root

    def _fetch_deb(self, pkg: str, version: str, root: Path) -> None:
        debs = self.staging / "debs"
        debs.mkdir(parents=True, exist_ok=True)
        print(f"fetching {pkg}={version} ...", file=sys.stderr)
        subprocess.run(["apt-get", "download", f"{pkg}={version}"], cwd=debs, check=True)
        (deb,) = sorted(debs.glob(f"{pkg}_*.deb"))
        subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)

    def deb_file(self, pkg: str, path: str) -> Path:
        f = self.deb_root(pkg) / path.lstrip("/")
        if not f.exists():
            raise MissingSource(f"{path} not found in package {pkg} (under {self.deb_root(pkg)})")
        return f

    def deb_dep5(self, pkg: str) -> list | None:
        """The package's DEP-5 stanzas; None if its copyright file is not machine-readable or
        lives in another package (gimp-help-en's doc directory is a link into gimp-help-common)."""
        if pkg not in self._dep5:
            f = self.deb_root(pkg) / "usr/share/doc" / pkg / "copyright"
            self._dep5[pkg] = parse_dep5(f) if f.exists() else None
        return self._dep5[pkg]

    # ---- PyPI
    def sdist(self, project: str) -> Path:
        version, filename = SDISTS[project]
        f = self.sdist_dir / filename
        if not f.exists():
            cmd = ["pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation",
                   f"{project}=={version}", "-d", str(self.sdist_dir)]
            if not self.fetch:
                raise MissingSource(f"{f} is missing: run  {' '.join(cmd)}  (or rerun with --fetch)")
            self.sdist_dir.mkdir(parents=True, exist_ok=True)
            subprocess.run([sys.executable, "-m", *cmd], check=True)
        return f

    @staticmethod
    def module_dir(distribution: str) -> Path:
        spec = importlib.util.find_spec(PYPI_MODULES[distribution])
        if spec is None or spec.origin is None:
            raise MissingSource(f"PyPI package {distribution} is not installed (pip install {distribution})")
        return Path(spec.origin).parent

    # ---- one manifest item
    def read(self, item: Item) -> tuple[bytes, str]:
        """(file bytes, original path as recorded in SOURCES.csv)."""
        if item.source == "deb":
            return self.deb_file(item.package, item.path).read_bytes(), item.path
        if item.source == "rcc":
            rcc_path, member = item.path.split("::")
            f = self.deb_file(item.package, rcc_path)
            if f not in self._rcc:
                self._rcc[f] = read_rcc(f)
            if member not in self._rcc[f]:
                raise MissingSource(f"{member} not in {rcc_path}")
            return self._rcc[f][member], f"{rcc_path}:{member}"
        if item.source == "pypi":
            f = self.module_dir(item.package) / item.path
            if not f.exists():
                raise MissingSource(f"{item.path} not found in the installed {item.package}")
            return f.read_bytes(), f"{PYPI_MODULES[item.package]}/{item.path}"
        if item.source == "sdist":
            tar = self.sdist(item.package)
            with tarfile.open(tar) as t:
                member = t.extractfile(item.path)
                if member is None:
                    raise MissingSource(f"{item.path} not in {tar.name}")
                return member.read(), f"{tar.name}:{item.path}"
        raise ValueError(f"unknown source kind {item.source!r}")

    def licence(self, item: Item) -> tuple[str, str]:
        """(licence, extra note) of an item."""
        if item.source in ("deb", "rcc"):
            stanzas = self.deb_dep5(item.package)
            if stanzas is not None:
                if item.source == "rcc":
                    stem = item.path.split("::")[1].removeprefix("gcompris/").rsplit(".", 1)[0]
                    keys = [stem + ext for ext in (".jpg", ".png", ".webp", ".JPG")]
                else:
                    keys = [item.key or item.path.lstrip("/")]
                lic, comment = dep5_licence(stanzas, keys)
                if item.licence and item.licence != lic:
                    return item.licence, f"Debian copyright: {lic}"
                return lic, (f"upstream: {comment}" if comment.startswith("http") else "")
        if not item.licence:
            raise ValueError(f"{item.name}: an explicit licence is required")
        return item.licence, ""


# ----------------------------------------------------------------------------- image processing
def to_square(data: bytes, crop: Crop | None, rotate: int = 0, side: int = SIDE) -> Image.Image:
    """Decode, orient (EXIF, then ``rotate`` degrees clockwise), flatten transparency onto grey,
    crop a square and resize it to side x side RGB."""
    im = Image.open(io.BytesIO(data))
    im = ImageOps.exif_transpose(im)
    if rotate:
        im = im.rotate(-rotate, expand=True)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        flat = Image.new("RGBA", im.size, BACKGROUND + (255,))
        im = Image.alpha_composite(flat, im)
    im = im.convert("RGB")
    w, h = im.size
    cx, cy, frac = crop if crop is not None else (0.5, 0.5, 1.0)
    s = min(round(frac * min(w, h)), w, h)
    left = min(max(round(cx * w - s / 2), 0), w - s)
    top = min(max(round(cy * h - s / 2), 0), h - s)
    return im.crop((left, top, left + s, top + s)).resize((side, side), Image.Resampling.LANCZOS)


def contact_sheet(files: list[Path], out: Path, cols: int = 12) -> None:
    rows = -(-len(files) // cols)
    sheet = Image.new("RGB", (cols * SIDE, rows * SIDE), "white")
    for i, f in enumerate(files):
        sheet.paste(Image.open(f), ((i % cols) * SIDE, (i // cols) * SIDE))
    sheet.save(out)


# ----------------------------------------------------------------------------- main
def build(out_dir: Path, sources: Sources) -> list[dict[str, str]]:
    names = [f"{it.category}_{it.name}" for it in MANIFEST]
    duplicates = {n for n in names if names.count(n) > 1}
    if duplicates:
        raise ValueError(f"duplicate names in the manifest: {sorted(duplicates)}")
    if not features.check("webp"):
        raise MissingSource("Pillow was built without WebP support (needed for GCompris images)")
    problems = []
    for item in {it.package: it for it in MANIFEST}.values():  # one check per package, all reported
        try:
            if item.source in ("deb", "rcc"):
                sources.deb_root(item.package)
            elif item.source == "sdist":
                sources.sdist(item.package)
            else:
                sources.module_dir(item.package)
        except MissingSource as err:
            problems.append(str(err))
    if problems:
        raise MissingSource("\n".join(problems))
    out_dir.mkdir(parents=True, exist_ok=True)
    for old in out_dir.glob("*.jpg"):
        old.unlink()
    rows = []
    for item in sorted(MANIFEST, key=lambda it: (CATEGORY_ORDER.index(it.category), it.name)):
        data, original = sources.read(item)
        licence, extra = sources.licence(item)
        file = f"{item.category}_{item.name}.jpg"
        to_square(data, item.crop, item.rotate).save(out_dir / file, "JPEG", quality=JPEG_QUALITY)
        notes = "; ".join(n for n in (item.notes, extra) if n)
        package = item.package + (f" {DEBIAN_PACKAGES[item.package]} (Debian)" if item.package in DEBIAN_PACKAGES
                                  else f" {SDISTS[item.package][0]} (PyPI sdist)" if item.package in SDISTS
                                  else " (PyPI)")
        rows.append({"file": file, "category": item.category, "package": package, "original_path": original,
                     "licence": licence, "notes": notes})
    with open(out_dir / "SOURCES.csv", "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=["file", "category", "package", "original_path", "licence", "notes"],
                                lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=OUT_DIR, help="output directory (default: %(default)s)")
    p.add_argument("--staging", type=Path, default=REPO / ".cache" / "demo_stimuli_sources",
                   help="where Debian packages are unpacked when not installed (default: %(default)s)")
    p.add_argument("--sdist-dir", type=Path, default=None,
                   help="directory holding PyPI sdists (default: STAGING/sdist)")
    p.add_argument("--fetch", action="store_true", help="apt-get download / pip download what is missing")
    p.add_argument("--preview", type=Path, default=None, help="also write a contact sheet PNG here")
    args = p.parse_args(argv)
    sources = Sources(args.staging, args.sdist_dir or args.staging / "sdist", args.fetch)
    try:
        rows = build(args.out, sources)
    except MissingSource as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    counts = {c: sum(r["category"] == c for r in rows) for c in CATEGORY_ORDER}
    size = sum(f.stat().st_size for f in args.out.glob("*.jpg"))
    print(f"wrote {len(rows)} images to {args.out} ({size / 1e6:.2f} MB): {counts}")
    if args.preview:
        contact_sheet([args.out / r["file"] for r in rows], args.preview)
    return 0


if __name__ == "__main__":
    sys.exit(main())
