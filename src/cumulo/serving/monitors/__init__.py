"""Model monitoring (SageMaker Model Monitor's, Azure ML's data drift): a monitor compares an
endpoint's captured requests and predictions with a baseline table version, on a cron schedule
or now, writes its figures to a lake table and alerts past its thresholds.

- :mod:`.models`: the monitors and their runs (rows of the metadata database);
- :mod:`.stats`: the statistics (PSI, KS, missing, out-of-range and unseen rates), pure numpy;
- :mod:`.captured`: captured requests read back into feature columns (DuckDB);
- :mod:`.monitors`: creating (every check made up front), reading and removing monitors;
- :mod:`.runs`: one run: read, compare, write the report, alert;
- :mod:`.scheduler`: the control plane's thread that claims and runs the due monitors;
- :mod:`.api`, :mod:`.cli`, :mod:`.sdk`: ``/api/v1/monitors``, ``cumulo monitors``,
  ``Client().monitors``.
"""
