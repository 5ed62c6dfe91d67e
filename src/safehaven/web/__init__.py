"""Server-rendered pages and documents (Jinja2, autoescaped; charts as inline SVG)."""
