"""The service operations on a fake engine (tests.support.synthetic_faces), and real-face paths."""
