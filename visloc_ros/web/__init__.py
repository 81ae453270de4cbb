"""The map's web page and JSON API (``visloc serve``)."""
