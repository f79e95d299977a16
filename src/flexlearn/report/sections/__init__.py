"""The report's sections, one module each: each turns the loaded run into the plain records (text, numbers, the
charts as SVG) that its template in `report/templates/` lays out as a `<section>` (or the header)."""
