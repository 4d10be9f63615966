"""The pure core: signals, classification, routing, retry maths and outcomes. No I/O here."""
