"""The HTTP layer: routes/, request and response schemas (schemas.py), dependencies (deps.py), every
exception-to-HTTP mapping (errors.py), body limits and upload spooling (limits.py, uploads.py) and the
security headers. The only room that speaks HTTP; it calls the services and the jobs, and does no tensor math.
"""
