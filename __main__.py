"""opsplane: both systems on this stack. Everything lives in components/; see README.md."""

from components.program import main

main()
