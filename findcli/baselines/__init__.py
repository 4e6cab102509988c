"""Baselines for the side-by-side comparison with FIND (issue 13): DPOK/DDPO-style LoRA fine-tuning of the
UNet (dpok.py), best-of-N over N(0, I) noise (best_of_n.py), ReNO-style gradient ascent on one image's
initial noise (reno.py); all behind findcli.baselines.base.Method, with their cost counted the same way."""
