"""The engine: assembling a run (``assemble``), the loop (``loop``), the step it shares with the LR
range test (``step``), evaluation, devices and the engine's default answers to the deciding hooks."""
