"""The `editledger` commands, one module per help panel (`cli.py` registers them): `setup`, `editing`, `history`,
`audit`; what they share is in `common`, everything they print in `render`."""
