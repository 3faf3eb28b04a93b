"""nbgrader settings for this course (docs/teaching.md, "Using nbgrader").

Copy this file into your nbgrader course folder. The code stub is the one `make student` uses
(scripts/make_student.py): a function whose body is the stub returns None, which a check reads as
"not attempted", and a prediction left at None stays None, so the released notebook runs top to
bottom before the student has answered anything.
"""
c = get_config()  # noqa: F821  (nbgrader provides get_config)

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\n..."}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"
