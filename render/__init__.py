"""Tumorscope render: VTK meshes, scenes, off-screen screenshots and exports."""
