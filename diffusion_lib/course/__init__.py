"""What the notebooks need beyond the library's math: the numerical checks they print (verify.py),
pictures and sliders with their static figures (viz.py), and the exercises with their checks
(exercises/). The library itself never imports this package."""
