import matplotlib.pyplot as plt
import numpy as np

from probelib.plotting import amplify, log_matrix


def test_log_matrix_colours_log10_and_labels_every_cell():
    values = np.array([[1.0, 0.01], [0.1, 10.0], [0.5, 0.5]])
    fig, ax = plt.subplots()
    im = log_matrix(ax, values, ["a", "b", "noise"], ["x", "y"],
                    label=lambda i, j, v: f"{i}{j}:{v:g}")
    np.testing.assert_allclose(im.get_array(), np.log10(values))
    texts = {t.get_text(): t.get_color() for t in ax.texts}
    assert set(texts) == {"00:1", "01:0.01", "10:0.1", "11:10", "20:0.5", "21:0.5"}
    assert texts["01:0.01"] == "w" and texts["11:10"] == "k"     # white on the dark (low) half
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "noise"]
    plt.close(fig)


def test_amplify_maps_a_perturbation_into_the_display_range():
    delta = np.zeros((3, 4, 4))
    delta[0, 0, 0], delta[1, 1, 1] = 0.02, -0.01
    shown = amplify(delta)
    assert shown.min() >= 0 and shown.max() <= 1
    assert shown[0, 0, 0] == 1.0 and shown[2, 3, 3] == 0.5


def test_importing_plotting_applies_the_book_theme():
    import matplotlib as mpl
    import probelib.plotting as plotting

    mpl.rcdefaults()
    plotting.set_book_theme()
    assert not mpl.rcParams["axes.spines.top"] and not mpl.rcParams["axes.spines.right"]
    assert not mpl.rcParams["axes.grid"]  # no grid drawn over images and heatmaps
    assert mpl.rcParams["savefig.dpi"] == plotting.BOOK_THEME["rc"]["savefig.dpi"]


def _scores():
    import pandas as pd
    return pd.DataFrame({"model": ["a"] * 3 + ["b"] * 3, "roi": ["FFA", "PPA", "EBA"] * 2,
                         "r": [0.2, 0.4, 0.6, 0.5, 0.5, 0.8]})


def test_model_bars_draw_means_with_sem_and_every_value():
    from probelib.plotting import model_bars

    fig, ax = plt.subplots()
    model_bars(ax, _scores(), "model", "r", points="roi", reference=0.9, reference_label="ceiling")
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.4, 0.6])  # the means
    sem_a = np.std([0.2, 0.4, 0.6], ddof=1) / np.sqrt(3)
    spans = [(np.nanmin(line.get_ydata()), np.nanmax(line.get_ydata())) for line in ax.lines]
    assert any(np.allclose(span, [0.4 - sem_a, 0.4 + sem_a]) for span in spans)  # error bar of a
    dots = np.concatenate([c.get_offsets()[:, 1] for c in ax.collections])
    np.testing.assert_allclose(sorted(dots), sorted(_scores()["r"]))
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["FFA", "PPA", "EBA", "ceiling"]
    plt.close(fig)


def test_paired_points_join_each_unit_and_show_the_mean():
    import pandas as pd
    from probelib.plotting import paired_points

    data = pd.DataFrame({"unit": ["u1", "u2", "u3"] * 2, "readout": ["OLS"] * 3 + ["L1"] * 3,
                         "s": [1.0, 2.0, 3.0, 0.5, 1.0, 1.5]})
    fig, ax = plt.subplots()
    paired_points(ax, data, "readout", "s", "unit", order=["OLS", "L1"])
    pairs = [line.get_ydata() for line in ax.lines if len(line.get_xdata()) == 2
             and list(line.get_xdata()) == [0, 1]]
    assert {(1.0, 0.5), (2.0, 1.0), (3.0, 1.5)} <= set(map(tuple, pairs))  # one line per unit
    assert [t.get_text() for t in ax.get_xticklabels()] == ["OLS", "L1"]
    plt.close(fig)
