"""The project's tests, run by Django's runner: ``python manage.py test``."""
