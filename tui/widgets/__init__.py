"""Widgets of the dashboard. Tables use the Line API (``table.LineTable``)."""
