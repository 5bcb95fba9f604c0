from qc_pipeline.cli import main

raise SystemExit(main())
