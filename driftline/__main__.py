from driftline.cli import main

raise SystemExit(main())
