"""matplotlib, imported only when a figure is drawn, on the Agg backend (PNG files, no window)."""


def pyplot():
    """matplotlib.pyplot on the Agg backend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
