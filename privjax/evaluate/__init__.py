"""Privacy evaluation of trained runs: frozen features (`features`) and the protocol (`protocol`)."""
