"""Thin click entry points: parse, call the library, turn GdraeError into one line and a non-zero exit."""
