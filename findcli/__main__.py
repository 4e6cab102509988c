"""`python -m findcli ...`: always our app (never the system find)."""

from findcli.entry import findcli_main

findcli_main()
