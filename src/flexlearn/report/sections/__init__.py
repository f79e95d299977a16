"""The report's sections, one module each; each renders a `<section>` (or the header) from the loaded run."""
