"""What a run leaves behind, typed: its record (``record.json``), the JSON reader and writer every record
goes through, where it came from (provenance), and the run folder's layout (:class:`RunDir`)."""
