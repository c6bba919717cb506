"""Detection quality measured on labelled data: ``plantwatch evaluate nab|tep|cmapss|sim|csv``.

Each evaluator is a module with ``HELP``, ``configure(parser)`` and ``run(args) -> Report``;
the scorers (NAB score, TEP detection and false alarm rates, C-MAPSS RMSE and PHM08) are written
here from the datasets' READMEs and tested on small hand-checked cases.
"""
