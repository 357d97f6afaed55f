"""archgen.mappings"""
