"""The run report: one self-contained HTML page (`html`) and its figures (`figures`)."""
