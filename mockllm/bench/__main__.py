from mockllm.bench.cli import main

raise SystemExit(main())
