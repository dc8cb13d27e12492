"""Reports: terminal, JSON, JUnit XML, HTML.  Reports format; they never compute."""
