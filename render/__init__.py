"""Tumorscope render: VTK meshes, scenes, off-screen screenshots and exports."""

import os

# Off-screen rendering through EGL needs no X server; VTK reads this when it first creates a
# render window, so it must be set before any submodule imports vtk. setdefault keeps a
# user's own choice (e.g. an X11 window for interactive use).
os.environ.setdefault("VTK_DEFAULT_OPENGL_WINDOW", "vtkEGLRenderWindow")
