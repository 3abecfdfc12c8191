"""After training: summary tables with statistics, plots, reports and prediction grids.

Imported on first use (scipy, statsmodels and matplotlib stay out of training and workers).
"""
