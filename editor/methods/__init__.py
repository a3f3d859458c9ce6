"""One file per editing method; each main function reads like its formula in NSE.md."""
