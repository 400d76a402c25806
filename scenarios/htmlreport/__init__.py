"""HTML reports: Plotly figures (``plots``, pure) and pages from Jinja2 templates (``page``).

Shared by the scenario report (``scenarios.report``) and the load report
(``loadtests.report``): one look, one banner, one copy button, one way to draw plots.
"""
