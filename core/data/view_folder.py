"""Any folder of NIfTI images opened to look at, without a run: BraTS cases as
:func:`~tumorscope.core.data.cases.discover` finds them, else the folder's own NIfTI files.

Nothing here reads voxels; the viewer reads each file when it is shown.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from tumorscope.core.data.cases import MODALITIES, discover
from tumorscope.core.data.nifti import NIFTI_SUFFIXES, nifti_stem
from tumorscope.core.errors import LayoutError

LABEL_NAME_RE = re.compile(r"(^|[_\-.])(seg|segm|label|labels|mask)([_\-.]|$)", re.IGNORECASE)
"""A file of a plain folder named like this is read as its label map, not as an image."""


@dataclass(frozen=True)
class ViewCase:
    """One case to view: ``images`` (name -> file, shown in this order), the ``label`` map
    if there is one and how its values read (``label_convention``)."""

    case_id: str
    images: dict[str, Path]
    label: Path | None = None
    label_convention: str = "brats2020"
    metadata: dict = field(default_factory=dict)

    @property
    def synthetic(self) -> bool:
        return bool(self.metadata.get("synthetic", False))


def _plain_case(folder: Path, files: list[Path]) -> ViewCase:
    images = {nifti_stem(p): p for p in files if not LABEL_NAME_RE.search(nifti_stem(p))}
    labels = [p for p in files if LABEL_NAME_RE.search(nifti_stem(p))]
    if not images:  # only label-like names: show them as images rather than nothing
        images, labels = {nifti_stem(p): p for p in files}, []
    return ViewCase(folder.name or str(folder), images, labels[0] if labels else None)


def open_view_folder(path: str | Path) -> tuple[ViewCase, ...]:
    """The cases to view below ``path``: a BraTS dataset or case folder (any layout), a
    folder of other NIfTI files (one case named after the folder; a file named ``*seg*``,
    ``*label*`` or ``*mask*`` is its label map), or one NIfTI file.

    Raises :class:`~tumorscope.core.errors.LayoutError` naming ``path`` when it holds no
    NIfTI file.

    >>> import tempfile, nibabel as nib, numpy as np
    >>> root = Path(tempfile.mkdtemp())
    >>> for name in ("scan", "scan_mask"):
    ...     nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.float32), np.eye(4)),
    ...              root / f"{name}.nii.gz")
    >>> [(c.case_id == root.name, list(c.images), c.label.name) for c in open_view_folder(root)]
    [(True, ['scan'], 'scan_mask.nii.gz')]
    """
    path = Path(path).expanduser()
    if path.is_file() and path.name.lower().endswith(NIFTI_SUFFIXES):
        return (ViewCase(nifti_stem(path), {nifti_stem(path): path}),)
    try:
        found = discover(path)
    except LayoutError as exc:
        if not path.is_dir():
            raise
        files = sorted(p for p in path.iterdir()
                       if p.is_file() and p.name.lower().endswith(NIFTI_SUFFIXES))
        if not files:
            raise LayoutError(f"no NIfTI file here ({exc.fault})", path=path) from None
        return (_plain_case(path, files),)
    cases = []
    for case in found:
        if case.problems:  # e.g. a folder that cannot be listed: nothing to show of it
            continue
        images = {m: case.images[m] for m in MODALITIES if m in case.images}
        if images:
            cases.append(ViewCase(case.case_id, images, case.label, case.label_convention,
                                  dict(case.metadata)))
    if not cases:
        raise LayoutError("no case with a readable image", path=path)
    return tuple(cases)

