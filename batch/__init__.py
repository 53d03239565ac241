"""Folder runs: what the command line (and a script, or a Ray cluster) runs over many files.

``naming`` plans (inputs, output names), ``runner`` runs (prefetch, grouped restores, clips),
``report`` writes the JSON report, ``imageio``/``videofiles`` read and write files (atomically,
through ``models.files``), ``claims`` keeps two runs off one output, ``preflight`` settles
weights and upsamplers before any work, ``ray_*`` spreads a run over a Ray cluster.
"""
