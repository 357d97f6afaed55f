"""archgen.verif"""
