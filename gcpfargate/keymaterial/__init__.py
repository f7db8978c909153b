"""Key material: recognising, scanning for and redacting private keys, and where a key may be
written."""
