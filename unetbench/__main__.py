from unetbench.cli import main

raise SystemExit(main())
