"""Agents and their tools: one tool set over Python, CLI and MCP; built-in agents; the LLM adapter."""

from sockdrill.agents.base import Agent, Incident, load_agent
from sockdrill.agents.tools import ToolContext, Tools

__all__ = ["Agent", "Incident", "ToolContext", "Tools", "load_agent"]
