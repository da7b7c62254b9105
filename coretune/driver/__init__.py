"""The driver: a pure planner (:mod:`.plan`) and the Ray runner (:mod:`.run`, :mod:`.worker`)."""
