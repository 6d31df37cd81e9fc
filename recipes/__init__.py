"""Bundled recipes, shipped as package data so `trickbag run quickstart` works from any folder."""
