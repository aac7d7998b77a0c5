"""Convergence plots (matplotlib, written as PNG without a display)."""

from pathlib import Path

from .ngd._train import History


def plot_convergence(
    histories: dict[str, History],
    path: str | Path,
    *,
    title: str = "",
    error: str = "relative_l2",
) -> Path:
    """Loss (left) and `error` (right) against optimization wall time, one line per
    run, log scales. Returns the path of the PNG written."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure, (loss_axis, error_axis) = plt.subplots(1, 2, figsize=(11, 4.2))
    for label, history in histories.items():
        if history.seconds:
            loss_axis.loglog(history.seconds, history.loss, label=label)
        if error in history.evaluations:
            seconds = [max(s, 1e-3) for s in history.evaluation_seconds]
            error_axis.loglog(
                seconds, history.evaluations[error], marker=".", label=label
            )
    loss_axis.set(xlabel="wall time [s]", ylabel="loss ½‖r‖²", title="loss")
    error_axis.set(
        xlabel="wall time [s]",
        ylabel=error.replace("_", " "),
        title=error.replace("_", " ") + " error",
    )
    for axis in (loss_axis, error_axis):
        axis.grid(True, which="both", alpha=0.3)
        axis.legend()
    if title:
        figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
    return path
