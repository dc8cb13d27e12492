from verigrad.cli.main import main

raise SystemExit(main())
