"""The app's pages: cohort overview, patient 3-D view, slice viewer; each has ``render(ctx)``."""
