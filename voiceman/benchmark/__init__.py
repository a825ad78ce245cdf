"""``voiceman bench``: naive / in-process / pipeline side by side on one synthesised workload."""
