"""Figure descriptions: Qt-free data of what an analysis figure or table shows.

Each module builds one description from the filtered cohort by calling the ``stats`` package
(``km``: Kaplan-Meier curves with the number-at-risk table; ``forest``; ``roc``; ...). The
GUI's pyqtgraph views draw a description, and the publication exports draw the same one, so a
number on screen and on paper cannot differ. ``to_dict()`` of a description is what the
view's ``--screenshots`` JSON holds.
"""
