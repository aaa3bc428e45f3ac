"""Output names of the participant level: the one home of every derivative file name that another
step (the group level, the reports) has to find again.

Each name follows the image's own prefix (its entities without the suffix), e.g.
``sub-01_ses-1_space-orig_label-SC_mask.nii.gz``.
"""
SC_MASK = "space-orig_label-SC_mask.nii.gz"
LESION_MASK = "space-orig_label-lesion_mask.nii.gz"
SC_PROB = "space-orig_label-SC_probseg.nii.gz"
LESION_PROB = "space-orig_label-lesion_probseg.nii.gz"
MORPHOMETRICS = "morphometrics.tsv"
PER_SLICE = "desc-perslice_morphometrics.tsv"
LESIONS = "desc-lesions_morphometrics.tsv"
HAEMORRHAGE_MASK = "space-orig_label-haemorrhage_mask.nii.gz"   # --basic-score (experimental)
DSEG = "space-orig_dseg.nii.gz"
MANIFEST = "desc-basicseg_manifest.json"
# every file one image may have, for removing what a failed or stale attempt left
IMAGE_OUTPUTS = (SC_MASK, LESION_MASK, SC_PROB, LESION_PROB, MORPHOMETRICS, PER_SLICE, LESIONS, DSEG, HAEMORRHAGE_MASK,
                 *(n.replace(".nii.gz", ".json") for n in (SC_MASK, LESION_MASK, SC_PROB, LESION_PROB, DSEG,
                                                          HAEMORRHAGE_MASK)))
