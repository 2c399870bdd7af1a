"""The autotelic loop (organ 7): the Motivator sets the society goals of its own, within a budget."""

from a4ps.autonomy.curiosity import CuriosityTrial, ToolMissing
from a4ps.autonomy.goals import GOAL_SCHEMA, Goal, GoalRefused, GoalWriter
from a4ps.autonomy.ledger import OFF, PAUSED, RUNNING, AutonomyLedger
from a4ps.autonomy.motivator import Motivator
from a4ps.autonomy.novelty import RepeatFilter

__all__ = ["GOAL_SCHEMA", "OFF", "PAUSED", "RUNNING", "AutonomyLedger", "CuriosityTrial", "Goal", "GoalRefused",
           "GoalWriter", "Motivator", "RepeatFilter", "ToolMissing"]
