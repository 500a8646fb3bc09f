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
