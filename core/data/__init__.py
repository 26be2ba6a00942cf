"""Data in and out: finding and checking cases, NIfTI I/O, labels, geometry, preprocessing
and its cache, and the synthetic demo cohort."""
