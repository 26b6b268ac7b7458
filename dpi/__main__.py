from dpi.cli import main

raise SystemExit(main())
