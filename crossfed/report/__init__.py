"""The run report: scenario accounts, their chains, JUnit properties and the HTML page."""
