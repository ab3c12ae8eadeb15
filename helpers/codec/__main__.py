from helpers.codec.cli import main

raise SystemExit(main())
