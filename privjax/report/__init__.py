"""Reports: `tables` (report.json, report.md, comparisons) and `plots` (privacy–accuracy curves)."""
