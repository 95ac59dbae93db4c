"""The results schema, torch-free: what the reports read. The case and its fields (``case``),
statuses (``status``), file names (``files``), figure declarations (``figures``) and the
row file (``results``)."""
