from helpers.commands import main

raise SystemExit(main())
